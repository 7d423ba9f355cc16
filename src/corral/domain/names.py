"""Name rules shared by every entity."""

import re

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def check_dns_label(value: str, *, min_length: int = 2, max_length: int = 41) -> str:
    """Project and cluster names: DNS labels, so they can name namespaces and accounts."""
    if not (min_length <= len(value) <= max_length):
        raise ValueError(f"must be {min_length} to {max_length} characters long")
    if not _DNS_LABEL.match(value):
        raise ValueError("must be lowercase letters, digits and '-', starting and ending with a letter or digit")
    return value


# Workload names: one rule for the API, the CLI and the web form (whose input carries
# WORKLOAD_NAME_HTML_PATTERN and whose hint is WORKLOAD_NAME_RULE). Checked on submission
# only: workloads stored before the rule (or recorded from a cluster, "found <job>") keep
# their names and stay readable.
WORKLOAD_NAME_MAX = 128
WORKLOAD_NAME_RULE = (f"1 to {WORKLOAD_NAME_MAX} letters, digits, '-', '_' and '.', "
                      "starting with a letter or digit")
_WORKLOAD_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{WORKLOAD_NAME_MAX - 1}}}")
# The same in the HTML pattern attribute's syntax (browsers compile it with the v flag,
# where a '-' in a class must be escaped).
WORKLOAD_NAME_HTML_PATTERN = rf"[A-Za-z0-9][A-Za-z0-9._\-]{{0,{WORKLOAD_NAME_MAX - 1}}}"


def check_workload_name(value: str) -> str:
    """Workload names: what a person reads and types, and what backends may use in job,
    directory and log names, so no spaces, slashes or other punctuation."""
    if not _WORKLOAD_NAME.fullmatch(value):
        raise ValueError(f"must be {WORKLOAD_NAME_RULE}")
    return value

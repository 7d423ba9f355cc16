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


def check_display_name(value: str, *, max_length: int = 128) -> str:
    """Workload names: free text a person reads, without control characters."""
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    if len(value) > max_length:
        raise ValueError(f"must be at most {max_length} characters long")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain control characters")
    return value

"""The `corral` command line: `corral serve`, direct database administration, and
everything else through the HTTP client (``corral.client``)."""

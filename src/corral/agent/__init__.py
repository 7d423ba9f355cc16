"""The cluster agent: heartbeat, fetch work, run it through a backend, report statuses."""

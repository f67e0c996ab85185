"""Workspaces: a person's named project trees, kept by the platform and mounted read-write in
app-dev sandboxes (never in ML ones, never holding governed data)."""

"""REST endpoints of members and the behaviour log (docs/API.md)."""

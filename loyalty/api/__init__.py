"""REST endpoints of the points ledger (docs/API.md): balance, history, earn, redeem, reverse."""

"""The audit store: one SQLite file per repository (``store``) and its tamper-evident feed (``ledger``)."""

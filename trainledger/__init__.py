"""The `trainledger` command: one entry point over the trainer and the monitor."""

"""What must outlive the process: the database and its migrations, the visits ledger,
the audit log, the webhook outbox and the recordings index."""

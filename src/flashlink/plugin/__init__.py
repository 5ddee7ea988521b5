"""The interLink plugin HTTP service: state in SQLite, batched status reconciler, logs."""

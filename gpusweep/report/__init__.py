"""What a finished sweep's records say: the report, its pictures, the check."""

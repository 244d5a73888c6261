"""Track a corpus of videos: jobs file, local worker processes or a Ray actor pool, a ledger."""

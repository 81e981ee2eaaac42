"""The reliability suite (see __main__)."""

"""Command-line faces: argv in, API calls, one-line errors and exit codes out."""

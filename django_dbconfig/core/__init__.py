"""The vocabulary every layer shares: errors, the table of alias keys, durations, Django's
DATABASES entry type, problem ids with their hints, and dbcheck's report.
"""

"""The trio SDK for writing iii workers in Python."""

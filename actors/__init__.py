"""Generic actor toolkit on trio: mailboxes, supervisors, the live actor tree."""

"""Administrative work: connections with an alias's `migrate` keys, `dbcheck --apply-settings`,
and `dbconfig --export`.
"""

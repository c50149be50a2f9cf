"""Pipeline 1, preflight: CSV → validated, priced messages, before anything is spent.

``fileformat`` sniffs the file and finds its columns, ``loader`` reads it in chunks, ``rows`` judges
each row: ``phones`` normalises numbers to E.164 (``phone_columns`` and ``phone_metadata`` do it for a
whole column at once), ``render`` fills the template and counts parts. Then ``suppression`` drops
opted-out numbers, ``pricing`` prices them, ``hlr`` checks them, and ``rejects`` writes every rejected
row with its reason. ``check`` runs the steps in that order and answers a ``result``; ``arrow``
holds the pyarrow helpers the vectorised steps share.
"""

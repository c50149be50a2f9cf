"""Pipeline 1, preflight: CSV → validated, priced messages, before anything is spent.

``loader`` reads the file, ``phones`` normalises numbers to E.164, ``render`` fills the template and
counts parts, ``suppression`` drops opted-out numbers, ``hlr`` checks numbers, ``pricing`` prices
them, ``rejects`` writes every rejected row with its reason; ``check`` runs them in that order.
"""

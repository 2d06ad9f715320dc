"""A local stand-in for a Microsoft 365 tenant (OIDC sign-in, Graph mail subset, outage switches).

It imports nothing of the app: it is the other side of the wire.
"""

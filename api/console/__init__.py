"""The web console: server-rendered pages under ``/ui`` over the API's own routes and services.

Each console route checks nothing itself: it calls the API route function (or the service it calls) with
the principal of the signed-in key, so roles, scopes and validation are the API's, never a copy.
"""

"""
Helpers for the integration tests, imported by the tests as a package
(tests/integration is on sys.path: pytest puts it there, and so does
conftest.py):

    from lib import pl                   # servers, tokens, WebSocket clients
    from lib import archutil as au       # archiver stream entries and rows
    from lib.chatlib import login, uniq  # chat protocol client

conftest.py's docstring is the API summary of pl and the fixtures.
"""

"""The web listener: the pages `listserv serve` answers on `[web] listen`.

Today that is RFC 8058 one-click unsubscribe (`listener`): a POST leaves at
once, a GET only shows a button. Writes through the store's writer. Will not
serve anything that needs a login, nor send mail itself.
"""

"""A mitmproxy addon that does nothing: the baseline the gateway's overhead is compared to."""


class Noop:
    pass


addons = [Noop()]

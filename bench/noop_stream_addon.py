"""A mitmproxy addon that only streams event streams: the least a proxy in front of Codex must do.

Without it mitmproxy holds a whole response before sending it on, so an SSE client sees its first
event only when the last one has arrived. The gateway's streaming figures are compared to this too.
"""

from mitmproxy import http


class StreamEventStreams:
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and "text/event-stream" in flow.response.headers.get("content-type", ""):
            flow.response.stream = True


addons = [StreamEventStreams()]

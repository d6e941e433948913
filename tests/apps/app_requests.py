"""Calls a local HTTP server through a traced function that uses requests."""

import http.server
import threading

from svc.client import fetch


class Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
threading.Thread(target=server.serve_forever, daemon=True).start()
print("status", fetch(f"http://127.0.0.1:{server.server_address[1]}/"))
server.shutdown()

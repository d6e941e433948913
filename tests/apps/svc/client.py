"""A component that calls an HTTP service through requests (for coexistence tests)."""

import requests


def fetch(url):
    return requests.get(url, timeout=5).status_code

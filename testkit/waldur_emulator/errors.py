"""The error answers of the emulated API (DRF-style JSON bodies)."""


class ApiError(Exception):
    """Raised by handlers and the store; the server turns it into an HTTP answer."""

    def __init__(self, status: int, body, headers=None):
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def not_found(model: str) -> ApiError:
    return ApiError(404, {"detail": f"No {model} matches the given query."})


def not_found_route() -> ApiError:
    return ApiError(404, {"detail": "Not found."})


def bad_request(body) -> ApiError:
    if isinstance(body, str):
        body = {"detail": body}
    return ApiError(400, body)


def forbidden() -> ApiError:
    return ApiError(403, {"detail": "You do not have permission to perform this action."})


def invalid_token() -> ApiError:
    return ApiError(401, {"detail": "Invalid token."})


def method_not_allowed(method: str) -> ApiError:
    return ApiError(405, {"detail": f'Method "{method}" not allowed.'})


def server_error(message: str = "Internal Server Error") -> ApiError:
    """Waldur's 500s come from Django's HTML page; a short text is enough here."""
    return ApiError(500, message)

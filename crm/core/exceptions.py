class ApplicationError(Exception):
    """A business rule refused an operation; `message` is safe to show to staff or partners."""

    def __init__(self, message: str, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}

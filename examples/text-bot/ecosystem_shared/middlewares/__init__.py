from ecosystem_shared.middlewares.errors import ErrorReporter
from ecosystem_shared.middlewares.rate_limit import RateLimiter, RateLimitMiddleware
from ecosystem_shared.middlewares.unknown_updates import skip_unknown_updates

__all__ = ["ErrorReporter", "RateLimitMiddleware", "RateLimiter", "skip_unknown_updates"]

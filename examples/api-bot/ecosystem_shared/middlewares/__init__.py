from ecosystem_shared.middlewares.errors import ErrorMiddleware
from ecosystem_shared.middlewares.rate_limit import RateLimiter, RateLimitMiddleware

__all__ = ["ErrorMiddleware", "RateLimitMiddleware", "RateLimiter"]

"""Gateway policies at request time: authentication, rate limits and quotas, transforms, CORS."""

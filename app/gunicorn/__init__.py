"""gunicorn integration: the worker (`worker`), its shared connection table (`table`), its JSON error
answers (`http_errors`), the server hooks (`hooks`) and the queue-wait clock the app reads (`queue_wait`).

Nothing here is imported by the app except `queue_wait`, which does not import gunicorn: the app runs
without it (tests, `flask run`).
"""

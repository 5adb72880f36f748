"""Message transport between API, scheduler and volume services.

Messages are wake-ups: the database is the truth. Callers cast only after the
commit the message refers to.
"""

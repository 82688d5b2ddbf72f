"""Push approval with number matching: the device protocol (``protocol``, pure, shared with the
reference authenticator), device enrolment and signed requests (``devices``), and sending,
answering and fatigue limits (``ceremony``).
"""

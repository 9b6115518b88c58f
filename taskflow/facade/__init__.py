"""The public methods of ``TaskManager``, grouped by whom they serve.

``TaskManager`` (in ``taskflow.manager``) holds the options and the parts;
each module here adds one group of its documented methods: registration and
schedules, reading and admin actions, lifecycle, and the FastAPI glue.  They
only delegate, to the registry, the repository and the runtime.
"""

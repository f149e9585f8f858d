from members import import_admin  # noqa: F401  (registers the ImportJob admin)

"""nbgrader configuration for the autograd course.

Read by every nbgrader command run from this directory (and copied into the temporary
course directories the grader and the tests build).
"""

c = get_config()  # noqa: F821  (injected by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "autograd"
c.CourseDirectory.db_url = "sqlite:///gradebook.db"

# Student stubs: nbgrader's own pattern, signature and docstring left in place.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Kernels import torch and matplotlib (~2 s alone, more on a busy machine): give kernel
# start-up and each cell room, so load cannot zero a correct answer. An infinite loop
# still ends at the cell timeout.
c.Execute.startup_timeout = 120
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True

# Re-insert test cells a student deleted, so deleting a test cannot dodge it.
c.OverwriteCells.add_missing_cells = True

# Any stderr output zeroes a test cell. The checks in `autograder` never write to
# stderr, but a kernel can print harmless library noise (e.g. matplotlib font cache,
# IPython's deprecation notices): drop those lines before scoring.
c.IgnorePattern.pattern = r"(Matplotlib is building the font cache|Fontconfig warning|DeprecationWarning: .*(jupyter|ipykernel|zmq))"

# LMS downloads are collected by `autograder collect` (Canvas, Moodle and Blackboard
# layouts, their times read as written; see the README), not by nbgrader's zip_collect,
# whose timestamp reader takes Blackboard's "-23-59-30" for a time-zone offset.

"""The course's side of a learning-management system (Canvas, Moodle, Blackboard Learn).

- :mod:`.layouts` reads the file names of each LMS's "download all submissions" archive
  (who submitted, when, which file) and says why a name is not a submission;
- :mod:`.collect` brings such a download (zip or unpacked folder) into nbgrader's
  ``submitted/<student>/<assignment>/`` layout, latest attempt per student, with
  nbgrader's ``timestamp.txt``, naming every file it skipped and why;
- :mod:`.roster` imports the class list (student id, names, email, LMS id, section) into
  the nbgrader gradebook, and maps the LMS's ids back to the course's student ids;
- :mod:`.export` writes the grades in the files the LMS imports, beside a per-question
  CSV;
- :mod:`.feedback` packs the feedback pages for the LMS's bulk feedback upload (or in
  per-student folders where it has none) and regenerates them after hand grading.
"""

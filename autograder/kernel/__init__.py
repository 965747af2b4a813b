"""What runs inside the student's kernel for the trusted grader: :mod:`.remote` serves
the grader's requests (call a function, read a value) and :mod:`.wire` is the plain-data
format both sides speak. Nothing here decides a grade."""

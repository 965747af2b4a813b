"""The trusted judge: each test cell's checks run again in the grading process, right
after the cell ran in the student's kernel, against the student's functions there; the
verdict replaces the test cell's outputs. It never executes student code.

- :mod:`.transport`: reaching the kernel (:class:`~.transport.Channel`,
  :class:`~.transport.Session`, :class:`~.transport.RemoteObject` stand-ins);
- :mod:`.planning`: reading a test cell's check calls and fetching their arguments;
- :mod:`.verdict`: running the checks, tamper marks, the cell's new outputs;
- :mod:`.outputs`: nbgrader's Execute with a cap on printed output;
- :mod:`.preprocessor`: :class:`~.preprocessor.TrustedExecute`, the Execute preprocessor
  that judges each test cell as it runs.
"""

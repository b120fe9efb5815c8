"""Library errors. The CLI maps them to exit codes: ParityError -> 1, every other -> 2."""


class ConversionError(Exception):
    """Bad input or an impossible request: one line that says what and where."""

    exit_code = 2


class CheckpointError(ConversionError):
    """The checkpoint file cannot be read safely, or is not a VideoMAE checkpoint."""


class MappingError(ConversionError):
    """Source tensors and target variables do not correspond one to one."""

    def __init__(self, path, problems, hint: str = ""):
        self.path = path
        self.problems = list(problems)
        head = f"{path}: {len(self.problems)} tensor(s) do not map: "
        super().__init__(head + "; ".join(self.problems) + (f" ({hint})" if hint else ""))


class OutputError(ConversionError):
    """The output folder cannot take the artifacts (a file, not writable, already present)."""


class ParityError(Exception):
    """The converted model does not reproduce the reference within tolerance."""

    exit_code = 1

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report


def require_tensorflow_backend(action: str) -> None:
    """ConversionError unless Keras runs on TensorFlow in this process: the artifacts
    (SavedModel, ``.tflite``) are TensorFlow's, written from TensorFlow graphs of the model.
    The console scripts choose that backend themselves; the library cannot once Keras is
    imported."""
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ConversionError(
            f"{action} needs Keras's TensorFlow backend, and this process runs Keras on "
            f"{backend} (KERAS_BACKEND); set KERAS_BACKEND=tensorflow before Keras is imported, "
            f"or use the console script, which does (the .keras and .weights.h5 files it writes "
            f"load on every backend)")


def type_in_words(value) -> str:
    """'a str', 'an int', 'nothing' (None): what a value is, for one-line errors."""
    if value is None:
        return "nothing"
    name = type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"

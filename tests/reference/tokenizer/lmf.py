"""lmf.py — the lmforge tokenizer from Python through ctypes (build/liblmforge.so), for the reference scripts and
the benchmark. Only what those need: load, encode, decode, save, train."""
import ctypes as C
import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
GPT2 = os.path.join(ROOT, "tests", "data", "gpt2")  # GPT-2 encoder.json + vocab.bpe (tests/data/gpt2/README.md)


class _Ids(C.Structure):
    _fields_ = [("data", C.POINTER(C.c_int32)), ("len", C.c_size_t), ("cap", C.c_size_t)]


class _Text(C.Structure):
    _fields_ = [("data", C.POINTER(C.c_char)), ("len", C.c_size_t), ("cap", C.c_size_t)]


class _TrainCfg(C.Structure):
    _fields_ = [("vocab_size", C.c_int), ("n_special", C.c_int), ("special_tokens", C.POINTER(C.c_char_p)),
                ("pretok", C.c_int), ("min_frequency", C.c_int64)]


PRETOK = {"gpt2": 0, "llama3": 1, "smollm": 2}
ALLOW_SPECIAL = 1


def _lib(build=None):
    build = build or os.environ.get("LMF_BUILD", os.path.join(ROOT, "build"))
    lib = C.CDLL(os.path.join(build, "liblmforge.so"))
    lib.lmf_tokenizer_load.argtypes = [C.c_char_p, C.POINTER(C.c_void_p)]
    lib.lmf_tokenizer_save.argtypes = [C.c_void_p, C.c_char_p]
    lib.lmf_tokenizer_free.argtypes = [C.c_void_p]
    lib.lmf_tokenizer_encode.argtypes = [C.c_void_p, C.c_char_p, C.c_size_t, C.c_uint, C.POINTER(_Ids)]
    lib.lmf_tokenizer_encode.restype = None
    lib.lmf_tokenizer_decode.argtypes = [C.c_void_p, C.POINTER(C.c_int32), C.c_size_t, C.c_uint, C.POINTER(_Text)]
    lib.lmf_tokenizer_vocab_size.argtypes = [C.c_void_p]
    lib.lmf_last_error.restype = C.c_char_p
    lib.lmf_bpe_trainer_create.argtypes = [C.POINTER(_TrainCfg), C.POINTER(C.c_void_p)]
    lib.lmf_bpe_trainer_feed.argtypes = [C.c_void_p, C.c_char_p, C.c_size_t]
    lib.lmf_bpe_trainer_feed.restype = None
    lib.lmf_bpe_trainer_finish.argtypes = [C.c_void_p, C.POINTER(C.c_void_p)]
    lib.lmf_bpe_trainer_free.argtypes = [C.c_void_p]
    return lib


class Tokenizer:
    def __init__(self, path, lib=None, _handle=None):
        self.lib = lib or _lib()
        if _handle is not None:
            self.h = _handle
            return
        h = C.c_void_p()
        if self.lib.lmf_tokenizer_load(path.encode(), C.byref(h)) != 0:
            raise RuntimeError(self.lib.lmf_last_error().decode())
        self.h = h

    def __del__(self):
        if getattr(self, "h", None):
            self.lib.lmf_tokenizer_free(self.h)
            self.h = None

    def encode(self, text, allow_special=False):
        b = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
        ids = _Ids()
        self.lib.lmf_tokenizer_encode(self.h, b, len(b), ALLOW_SPECIAL if allow_special else 0, C.byref(ids))
        out = ids.data[:ids.len] if ids.len else []
        C.CDLL(None).free(ids.data)
        return out

    def encode_count(self, b, allow_special=False):
        """Encodes bytes and returns only the number of ids (for timing without Python list overhead)."""
        ids = _Ids()
        self.lib.lmf_tokenizer_encode(self.h, b, len(b), ALLOW_SPECIAL if allow_special else 0, C.byref(ids))
        n = ids.len
        C.CDLL(None).free(ids.data)
        return n

    def decode_bytes(self, ids):
        arr = (C.c_int32 * len(ids))(*ids)
        t = _Text()
        if self.lib.lmf_tokenizer_decode(self.h, arr, len(ids), 0, C.byref(t)) != 0:
            raise RuntimeError(self.lib.lmf_last_error().decode())
        out = C.string_at(t.data, t.len) if t.len else b""
        C.CDLL(None).free(t.data)
        return out

    def save(self, path):
        if self.lib.lmf_tokenizer_save(self.h, path.encode()) != 0:
            raise RuntimeError(self.lib.lmf_last_error().decode())


def train(docs, vocab_size, specials=(), pretok="gpt2"):
    """Trains on an iterable of byte strings (each a document); returns a Tokenizer."""
    lib = _lib()
    arr = (C.c_char_p * max(1, len(specials)))(*[s.encode() for s in specials])
    cfg = _TrainCfg(vocab_size, len(specials), arr, PRETOK[pretok], 0)
    tr = C.c_void_p()
    if lib.lmf_bpe_trainer_create(C.byref(cfg), C.byref(tr)) != 0:
        raise RuntimeError(lib.lmf_last_error().decode())
    for d in docs:
        lib.lmf_bpe_trainer_feed(tr, d, len(d))
    h = C.c_void_p()
    rc = lib.lmf_bpe_trainer_finish(tr, C.byref(h))
    lib.lmf_bpe_trainer_free(tr)
    if rc != 0:
        raise RuntimeError(lib.lmf_last_error().decode())
    return Tokenizer(None, lib=lib, _handle=h)


def corpus():
    """The real corpus: the King James Bible (Debian bible-kjv) and the fortunes (Debian fortunes), as a list of
    (name, bytes), one document per file."""
    import subprocess
    docs = [("bible-kjv", subprocess.run(["bible", "gen1:1-rev22:21"], check=True, capture_output=True).stdout)]
    d = "/usr/share/games/fortunes"
    for f in sorted(os.listdir(d)):
        p = os.path.join(d, f)
        if f.endswith(".dat") or os.path.islink(p) or not os.path.isfile(p):
            continue
        docs.append(("fortunes/" + f, open(p, "rb").read()))
    return docs


def mixed_sample(limit_per_lang=120_000, code_limit=1_000_000):
    """A mixed multilingual + code sample from files every Debian machine has: the translated manual pages of
    /usr/share/man/<lang> (roff markup around German, French, Japanese, Korean, Russian, Polish, ... text), this
    repository's C sources and the Python standard library. Deterministic (sorted file lists)."""
    import glob
    import gzip
    import sysconfig
    parts = []
    mandir = "/usr/share/man"
    for lang in sorted(os.listdir(mandir)):
        if lang.startswith("man") or not os.path.isdir(os.path.join(mandir, lang)):
            continue
        got = 0
        for p in sorted(glob.glob(os.path.join(mandir, lang, "man*", "*.gz"))):
            try:
                b = gzip.open(p).read()
                b.decode("utf-8")
            except Exception:
                continue
            parts.append(b)
            got += len(b)
            if got >= limit_per_lang:
                break
    got = 0
    code = sorted(glob.glob(os.path.join(ROOT, "src", "*", "*.[ch]")))
    code += sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    for p in code:
        b = open(p, "rb").read()
        try:
            b.decode("utf-8")
        except UnicodeDecodeError:
            continue
        parts.append(b)
        got += len(b)
        if got >= code_limit:
            break
    return b"".join(parts)

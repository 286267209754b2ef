"""Token text never shows a replacement character (appliance.contracts.token_text): a token holding part of a
UTF-8 character reads as byte escapes alone and merges with its neighbours inside a context, for the demo
model's byte-level BPE and for a SentencePiece-style tokenizer with byte fallback (the real ``tokenizers``)."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models

from appliance.contracts.token_text import REPLACEMENT, context_text, quoted, token_text
from appliance.contracts.tokenization import load_tokenizer


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return load_tokenizer("demo", tmp_path_factory.mktemp("data"))


def test_every_demo_token_alone_reads_without_a_replacement_character(demo: Tokenizer) -> None:
    vocab = demo.get_vocab_size()
    partial = [i for i in range(vocab) if REPLACEMENT in demo.decode([i], skip_special_tokens=False)]
    assert partial, "the demo tokenizer has byte tokens that are not characters alone"
    texts = [token_text(demo, i) for i in range(vocab)]
    assert not [t for t in texts if REPLACEMENT in t]
    # The lead byte of "€" (e2 82 ac), as Neuronpedia writes it; a whole token is its decoded text.
    (lead,) = [i for i in partial if demo.id_to_token(i) == "â"]
    assert token_text(demo, lead) == "\\xe2"
    the = demo.encode("the").ids[-1]
    assert token_text(demo, the) == demo.decode([the])


def test_a_context_merges_a_split_character_onto_its_first_token(demo: Tokenizer) -> None:
    text = "The café costs €5 😀 now"
    ids = demo.encode(text, add_special_tokens=False).ids
    shown = context_text(demo, ids)
    assert len(shown.texts) == len(shown.joined) == len(ids)  # still one entry per token: positions hold
    assert "".join(shown.texts) == demo.decode(ids)
    assert not [t for t in shown.texts if REPLACEMENT in t]
    assert sum(shown.joined) >= 3  # é, € and 😀 each span several tokens here
    for i, joined in enumerate(shown.joined):
        assert (shown.texts[i] == "") == joined
    assert "€" in shown.texts and "😀" in shown.texts


def test_a_run_that_never_completes_reads_as_escapes(demo: Tokenizer) -> None:
    lead = demo.token_to_id("â")
    a = demo.encode("a", add_special_tokens=False).ids[-1]
    assert context_text(demo, [lead, a]).texts == ["\\xe2", demo.decode([a])]
    # A context cut inside a character (the window's edge) escapes what it has.
    euro = demo.encode("€", add_special_tokens=False).ids
    cut = context_text(demo, euro[:-1])
    assert cut.joined == [False] * len(cut.texts)
    assert "".join(cut.texts).startswith("\\x") and REPLACEMENT not in "".join(cut.texts)


def test_byte_fallback_pieces_read_as_their_bytes() -> None:
    vocab = {"<unk>": 0, "<0xE2>": 1, "<0x82>": 2, "<0xAC>": 3, "▁cost": 4}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    assert REPLACEMENT in tokenizer.decode([1])  # the case: alone, the byte is no character
    assert token_text(tokenizer, 1) == "\\xe2"
    shown = context_text(tokenizer, [4, 1, 2, 3])
    assert shown.texts == [" cost", "€", "", ""] and shown.joined == [False, False, True, True]


def test_a_label_quotes_an_escape_once() -> None:
    assert quoted("\\xe2\\x80") == "'\\xe2\\x80'"
    assert quoted("it's") == '"it\'s"'
    assert quoted("a\nb") == "'a\\nb'"

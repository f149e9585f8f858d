"""The sensitive-word matcher: a pure module, tested without a database."""

from campaigns.ugc.sensitive_words import compile_matcher, normalize


def test_normalising_drops_spacing_punctuation_case_and_full_width_forms():
    assert normalize(" 傻 逼！ Ｆ.u-C k\u200b ") == "傻逼fuck"


def test_words_are_found_through_the_usual_disguises():
    matcher = compile_matcher(["傻逼", "Fuck", "加微信"])

    assert matcher.find("你个傻 逼") == ["傻逼"]
    assert matcher.find("ｆ.U.c.K this") == ["Fuck"]
    assert matcher.find("私聊加 微-信 领券") == ["加微信"]


def test_each_word_is_reported_once_in_order_of_first_appearance_as_staff_wrote_it():
    matcher = compile_matcher(["广告", " 加微信 "])

    assert matcher.find("加微信看广告，广告，再加微信") == ["加微信", "广告"]


def test_overlapping_words_are_all_found_and_the_longer_wins_where_two_start_together():
    matcher = compile_matcher(["微信", "加微信", "信号", "加微"])

    assert matcher.find("加微信号") == ["加微信", "微信", "信号"]


def test_clean_text_and_empty_lists_find_nothing():
    assert compile_matcher(["广告"]).find("新品很好喝") == []
    assert compile_matcher([]).find("anything at all") == []
    assert compile_matcher(["  ", "!!"]).find("!! ") == []
    assert compile_matcher(["广告"]).find("") == []


def test_a_word_is_never_read_as_a_pattern():
    matcher = compile_matcher(["(a|b)*"])  # normalised to "ab"

    assert matcher.find("xaby") == ["(a|b)*"]
    assert matcher.find("aaa") == []
    assert matcher.find("ba") == []

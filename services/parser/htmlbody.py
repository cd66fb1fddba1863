"""HTML bodies: sanitised for display, and turned into readable text.

Sanitising is nh3 (the ammonia HTML5 sanitiser), never regular expressions.
`cid:` URLs stay allowed so that inline images keep pointing at their
attachments. Named `htmlbody` so it can never shadow the stdlib `html`.
"""

from __future__ import annotations

import html as stdlib_html
import re

import html2text
import nh3

_TAGS = nh3.ALLOWED_TAGS | {"font", "center"}
_ATTRIBUTES = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "*": {"title", "lang", "dir", "align", "valign", "width", "height", "bgcolor", "color"},
    "font": {"face", "size", "color"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "align", "valign", "width"},
    "th": {"colspan", "rowspan", "align", "valign", "width"},
    "table": {"border", "cellspacing", "cellpadding", "width", "align"},
}
_URL_SCHEMES = {"http", "https", "mailto", "cid", "tel", "ftp"}
# Whole elements whose content is never shown to a reader.
_DROP_WITH_CONTENT = {"script", "style", "title", "head", "template", "object", "noscript"}
MAX_CONVERTED = 1_000_000  # characters of HTML that html2text handles in reasonable time
_BLOCK_END = re.compile(r"</(?:p|div|li|tr|h[1-6]|table|blockquote)>|<br\s*/?>", re.IGNORECASE)
_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def sanitize(html: str) -> str:
    """Markup that is safe to show in the agent's browser."""
    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags=_DROP_WITH_CONTENT,
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel="nofollow noopener noreferrer",
        strip_comments=True,
    ).strip()


def to_text(safe_html: str) -> str:
    """Readable text from (already sanitised) HTML: paragraphs, lists and link targets kept."""
    if len(safe_html) > MAX_CONVERTED:
        # html2text is pure Python; beyond this size keep only the words.
        bare = nh3.clean(_BLOCK_END.sub("\n", safe_html), tags=set())
        return _BLANK_LINES.sub("\n\n", stdlib_html.unescape(bare)).strip() + "\n"
    converter = html2text.HTML2Text(bodywidth=0)
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.ignore_tables = True
    converter.unicode_snob = True
    converter.single_line_break = False
    converter.protect_links = False
    converter.skip_internal_links = True
    # html2text glues table cells together when it ignores tables.
    text = converter.handle(safe_html.replace("</td>", " </td>").replace("</th>", " </th>"))
    text = text.replace("\u00a0", " ")
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip("\n") + ("\n" if text.strip() else "")


def text_as_html(text: str) -> str:
    """A plain-text body as markup, for a message whose other parts are HTML."""
    return f"<pre>{stdlib_html.escape(text)}</pre>"

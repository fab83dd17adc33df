"""The login form: a small self-contained HTML page (no scripts), readable on any screen size."""

from __future__ import annotations

from html import escape

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · MimicSafe</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 0; background: #f6f6f7; color: #1f2328; }}
  main {{ max-width: 24rem; margin: 8vh auto; padding: 2rem; background: #fff; border-radius: 12px;
         box-shadow: 0 1px 4px rgba(0,0,0,.12); }}
  h1 {{ margin-top: 0; font-size: 1.5rem; }}
  label {{ display: block; margin: 1rem 0 .25rem; font-weight: 600; }}
  input {{ box-sizing: border-box; width: 100%; padding: .6rem; font-size: 1rem; border: 1px solid #bbb;
          border-radius: 6px; }}
  button {{ margin-top: 1.5rem; width: 100%; padding: .7rem; font-size: 1rem; border: 0; border-radius: 6px;
           background: #ea580c; color: #fff; font-weight: 600; cursor: pointer; }}
  .error {{ background: #fdecea; color: #8a1c1c; padding: .6rem; border-radius: 6px; }}
  p.small {{ font-size: .9rem; color: #555; }}
  @media (max-width: 30rem) {{ main {{ margin: 0; border-radius: 0; box-shadow: none; min-height: 100vh; }} }}
</style>
</head>
<body>
<main>
  <h1>MimicSafe</h1>
  <p>Log in to upload your art, train your style model and review uploads.</p>
  {error}
  <form method="post" action="/login">
    <input type="hidden" name="next" value="{next_path}">
    <input type="hidden" name="csrf_token" value="{csrf_token}">
    <label for="username">Username</label>
    <input id="username" name="username" autocomplete="username" autocapitalize="none" required value="{username}">
    <label for="password">Password</label>
    <input id="password" name="password" type="password" autocomplete="current-password" required>
    <button type="submit" id="login">Log in</button>
  </form>
  <p class="small">No account? Ask the admin of this MimicSafe. Anyone may open the
  <a href="{public_path}">public page</a>.</p>
</main>
</body>
</html>
"""


def login_page(*, next_path: str, public_path: str, csrf_token: str, error: str = "", username: str = "") -> str:
    """The form; `csrf_token` must match the browser's login cookie (ui/auth.py `LoginForms`)."""
    error_html = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return _PAGE.format(error=error_html, next_path=escape(next_path, quote=True),
                        csrf_token=escape(csrf_token, quote=True),
                        public_path=escape(public_path, quote=True), username=escape(username[:64], quote=True))

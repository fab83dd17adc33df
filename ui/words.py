"""Plain words for the gate's verdicts and the review states, as an artist reads them."""

from __future__ import annotations

from ownership import reasons

FOR_ARTIST = {
    reasons.PORTFOLIO_MATCH: "it matches one of your verified portfolio works",
    reasons.VALID_SIGNATURE: "it carries a valid signature made with your registered key",
    reasons.UNDECODABLE: "the file is damaged or cut short and cannot be opened",
    reasons.TOO_LARGE: "the file is bigger than the upload limit",
    reasons.UNSUPPORTED_FORMAT: "only PNG, JPEG and WebP images are accepted",
    reasons.NO_PROOF: "nothing proves it is yours — sign it with your registered key, or have it verified "
                      "in your portfolio",
    reasons.BAD_SIGNATURE: "the signature does not fit this file or your registered keys",
    reasons.KEY_REVOKED: "it was signed with a key that has been revoked",
    reasons.MATCHES_OTHER_ARTIST: "it matches a protected work",
    reasons.MATCHES_OPTOUT: "it matches a work whose author asked that it never be used for training",
    reasons.METADATA_PROHIBITS_TRAINING: "the file's own metadata says it must not be used for AI training",
    reasons.AI_GENERATED: "it is an AI-generated image",
    reasons.DUPLICATE: "you already uploaded this exact file",
    reasons.LOW_DETAIL: "it has too little detail to check reliably",
    reasons.MATCHES_NEWLY_PROTECTED: "it matches a work that became protected for someone else after you "
                                     "uploaded it; it is suspended while an admin reviews it",
}

# The witnesses `mimicsafe verify` asks, as the Generate and Check-an-image tabs name them.
WITNESSES = {"c2pa": "Content Credentials (C2PA)", "watermark": "invisible watermark", "fingerprint": "fingerprint"}

# Details the gate wrote that could describe someone else's work are not repeated to the artist.
_DETAIL_HIDDEN = {reasons.MATCHES_OTHER_ARTIST, reasons.MATCHES_OPTOUT, reasons.MATCHES_NEWLY_PROTECTED}


def reason_line(reason: dict) -> str:
    """One reason as a sentence for the artist, with the gate's detail where it is safe to show. Plain
    text: a page showing it as Markdown passes it through `ui.markup.plain`."""
    code = reason.get("code", "")
    text = FOR_ARTIST.get(code, code.replace("_", " "))
    detail = reason.get("detail", "")
    if detail and code not in _DETAIL_HIDDEN:
        return f"{text} — {detail}"
    return text


def review_line(decision: str, review_state: str, *, suspended: bool = False) -> str:
    """What happens next (or happened) to an upload, in words."""
    if suspended:
        return {"upheld": "suspended: an admin reviewed the match and kept it out of training; retrain your "
                          "model without it (Train tab)"}.get(
            review_state, "suspended, under review: it matches a work that became protected for someone else "
                          "after you uploaded it")
    if decision == "accepted":
        return "ready for training"
    return {
        "pending": "sent to an admin for review",
        "upheld": "an admin reviewed it and kept the rejection",
        "overridden": "an admin reviewed it and accepted it for training",
    }.get(review_state, "nothing for an admin to review — fix the file and upload it again")


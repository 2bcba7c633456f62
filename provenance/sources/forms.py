from __future__ import annotations

from django import forms

from provenance.sources.models import Source


class SourceForm(forms.ModelForm):
    """Any kind of source. The password field is never filled in from stored data (``render_value=False``)."""

    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        label="Registry password or token",
        help_text="Stored encrypted; never shown again. Leave empty to keep the stored one.",
    )

    class Meta:
        model = Source
        fields = ["name", "kind", "location", "tag_pattern", "newest", "signature_repository", "trust_root",
                  "expected_identity", "expected_identity_regexp", "expected_issuer", "is_insecure",
                  "ignore_tlog", "ca_certificates", "username", "is_scheduled"]
        # In the words of someone adding images, not the model's field names.
        labels = {
            "name": "Name",
            "kind": "What to watch",
            "location": "Image, repository or layout path",
            "tag_pattern": "Only tags matching",
            "newest": "Only the newest N tags",
            "signature_repository": "Signatures are stored in another repository",
            "trust_root": "Trust root (who may vouch for signers)",
            "expected_identity": "Expected signer",
            "expected_identity_regexp": "Expected signer (regular expression)",
            "expected_issuer": "Expected signer's identity provider (OIDC issuer)",
            "is_insecure": "The registry speaks plain HTTP (no TLS)",
            "ignore_tlog": "Accept key-signed images that were never logged (insecure)",
            "ca_certificates": "The registry's private CA certificates (PEM)",
            "username": "Registry username",
            "is_scheduled": "Re-scan on a schedule",
        }
        help_texts = {
            "name": "Shown on the fleet page, e.g. \"payments images\".",
            "location": "<code>ghcr.io/org/app:v1</code> (one tag), <code>ghcr.io/org/app</code> (a repository: "
                        "its tags), or a path on this server to an OCI image layout directory or .tar.",
            "tag_pattern": "Repositories only: a glob such as <code>v1.*</code>; empty means every tag.",
            "newest": "Repositories only: keep to the N most recently built tags; empty means all.",
            "signature_repository": "Set when signatures were pushed with <code>COSIGN_REPOSITORY</code>, e.g. "
                                    "<code>ghcr.io/org/signatures</code>; empty means next to each image.",
            "trust_root": "Public-good Sigstore for images signed in public CI; a private root for your own "
                          "Fulcio and Rekor.",
            "expected_identity": "Who must have signed: for GitHub Actions the workflow URL, e.g. "
                                 "<code>https://github.com/org/app/.github/workflows/release.yml@refs/heads/main"
                                 "</code>; for a person, their e-mail. Without a signer, keyless signatures are "
                                 "never trusted.",
            "expected_identity_regexp": "Instead of an exact signer: a pattern, e.g. "
                                        "<code>^https://github.com/org/.*</code>.",
            "expected_issuer": "Who vouched for the signer: <code>https://token.actions.githubusercontent.com"
                               "</code> for GitHub Actions, <code>https://accounts.google.com</code> for Google.",
            "is_insecure": "Only for a registry on your own machine or network that has no TLS certificate, such "
                           "as <code>localhost:5000</code>: images and credentials then travel unencrypted and "
                           "anyone on the way can change them. Signatures are still checked.",
            "ca_certificates": "Only for a registry whose TLS certificate comes from your organisation's own CA.",
            "username": "Only for a private registry; leave empty for anonymous access.",
            "is_scheduled": "Look again every few hours for new tags, new signatures and moved tags.",
        }
        widgets = {"ca_certificates": forms.Textarea(attrs={"rows": 3})}

    def clean_password(self) -> str | None:
        return self.cleaned_data.get("password") or None


ImageSourceForm = SourceForm  # the original name, kept for imports

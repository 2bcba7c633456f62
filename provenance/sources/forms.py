from __future__ import annotations

from django import forms

from provenance.sources.models import Source


class SourceForm(forms.ModelForm):
    """Any kind of source. The password field is never filled in from stored data (``render_value=False``)."""

    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted; never shown again. Leave empty to keep the stored one.",
    )

    class Meta:
        model = Source
        fields = ["name", "kind", "location", "tag_pattern", "newest", "signature_repository", "trust_root",
                  "expected_identity", "expected_identity_regexp", "expected_issuer", "is_insecure",
                  "ignore_tlog", "ca_certificates", "username", "is_scheduled"]
        labels = {"location": "Image, repository or layout path"}
        widgets = {"ca_certificates": forms.Textarea(attrs={"rows": 3})}

    def clean_password(self) -> str | None:
        return self.cleaned_data.get("password") or None


ImageSourceForm = SourceForm  # the original name, kept for imports

// The check/register form posts to the subject typed in the form (the URL names it).
const form = document.getElementById("compat-form");
const subject = document.getElementById("subject");
if (form && subject) {
  form.addEventListener("submit", (event) => {
    const button = event.submitter;
    const action = button && button.dataset.action ? button.dataset.action : "check";
    const name = encodeURIComponent(subject.value.trim() || "_");
    form.action = `/console/dev/schemas/${name}/${action}`;
    if (button) button.formAction = form.action;
  });
}

from django.urls import path

from campaigns.ugc.api.views import PollListApi, PollResultsApi, PollVoteApi, SubmissionCreateApi, SubmissionListApi

urlpatterns = [
    path("ugc/submissions/", SubmissionListApi.as_view(), name="ugc-submissions-list"),
    path("ugc/submissions/submit/", SubmissionCreateApi.as_view(), name="ugc-submissions-submit"),
    path("ugc/polls/", PollListApi.as_view(), name="ugc-polls-list"),
    path("ugc/polls/<str:poll_id>/votes/", PollVoteApi.as_view(), name="ugc-polls-vote"),
    path("ugc/polls/<str:poll_id>/results/", PollResultsApi.as_view(), name="ugc-polls-results"),
]

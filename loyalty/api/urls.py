from django.urls import path

from loyalty.api.views import (
    PointsBalanceApi,
    PointsEarnApi,
    PointsHistoryApi,
    PointsRedeemApi,
    PointsReverseApi,
    TierListApi,
)

urlpatterns = [
    path("members/<str:external_id>/points/", PointsBalanceApi.as_view(), name="points-balance"),
    path("members/<str:external_id>/points/history/", PointsHistoryApi.as_view(), name="points-history"),
    path("points/earn/", PointsEarnApi.as_view(), name="points-earn"),
    path("points/redeem/", PointsRedeemApi.as_view(), name="points-redeem"),
    path("points/reverse/", PointsReverseApi.as_view(), name="points-reverse"),
    path("tiers/", TierListApi.as_view(), name="tiers-list"),
]
